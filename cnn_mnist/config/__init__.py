"""The config: its typed schema, reading YAML and --set, and the shapes the model's
layers give. Imports only core.
"""
