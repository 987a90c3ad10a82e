"""What a network computes, pictured (kernels, feature maps, saliency, one value by
hand), your own pictures made MNIST-like, tiles and figures. Takes a Keras
model and plain values; imports core and config.
"""
