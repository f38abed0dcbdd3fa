"""Panoptic segmentation of raw images, so images without ground truth get crayon maps too.

Why: CoLLaVO's crayon prompt needs a panoptic map of every training image, but most images
(GRIT, CC3M, LLaVA's) have no panoptic annotation. CoLLaVO ran Mask2Former (COCO panoptic, 133
classes) through transformers with ``threshold=0.5, mask_threshold=0.95`` and no label fusing
(model-spec.md 1.3); ``crayonflow segment`` does the same over a folder of images and writes the
predictions in COCO panoptic format, so ``crayonflow build coco-panoptic`` turns them into crayon
shards unchanged.

- ``prediction``: the backend-neutral result (an id map plus (segment id, label id, score) per
  segment) and the category table (label id -> COCO category id ``label + 1``);
- ``mask2former``: transformers' Mask2Former from a local checkpoint folder, or a small random
  model built from a config (``--tiny``, for tests and the demo);
- ``detectron2``: an adapter from detectron2's panoptic output; import-guarded;
- ``coco_writer``: predictions -> COCO panoptic PNGs + JSON (area/bbox measured on the map);
- ``run``: the Ray Data pipeline (read tasks, a pool of model actors); ``cli``: the command.
"""
