"""The commands' libraries: predict, inspect, serve (with its static page), sweep,
runs. Imports the layers below; the CLI (cnn_mnist/cli/) sits on top.
"""
