"""Statistics shared by training and analysis: pure NumPy/SciPy, no Keras, no plotting."""
