"""The lecture's procedure, one module a stage: data, model, fit, evaluate, save.
Imports the layers below.
"""
