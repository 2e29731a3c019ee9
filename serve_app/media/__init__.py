"""Input media checked in the ingress before any model sees it: audio, images, image URLs."""
