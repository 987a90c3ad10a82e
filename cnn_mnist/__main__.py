from cnn_mnist.cli import main

main()
