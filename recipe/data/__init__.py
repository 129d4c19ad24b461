"""Where the data comes from and what it is: annotation formats (COCO, BDD100K, VOC, YOLO, Hub datasets), the one
data-source resolver, sanitising, splits, image checks and the typed, cached table the rest of the recipe reads."""
