"""Explanation maps: the Grad-CAM family, saliency, integrated gradients, occlusion (one file per method), the layer choice, map placement on the image, and their figures."""
