// Talking to the server: its JSON API (the errors it answers become thrown Errors).

export async function api(path, options = {}) {
  const response = await fetch(path, options);
  let data;
  try {
    data = await response.json();
  } catch (error) {
    throw new Error(`${path}: the server answered ${response.status} without JSON`);
  }
  if (!response.ok) {
    const error = new Error(data.error || `${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

export function postJSON(path, value) {
  return api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify(value)});
}
