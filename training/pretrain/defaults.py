"""The pretraining commands' defaults, apart from the code that trains: the ``crayonflow`` command
line imports this at start-up, and must not import torch for it (``--help`` took 3 s with it).
Each is the best measured setting in docs/model-looks.md (2026-12-07)."""

LLM_WORLD_SEED = 1_000_003  #: training scenes; the demo world is seed 0 and its val scenes must stay unseen
#: lr and batch won the < 5-minute runs of model-looks.md (2026-12-07); 3,000 steps (about 18 min on one
#: thread) is what made it look things up on text for every family, refer included (refer .23/.03)
LLM_DEFAULTS = {"steps": 3000, "batch": 32, "lr": 1e-3}

VISION_WORLD_SEED = 2_000_003  #: a world of its own: never the demo world's (seed 0 or 11) val scenes
#: the defaults of ``pretrain_vision`` and the command: the best measured setting
VISION_DEFAULTS = {"steps": 2000, "batch": 32, "lr": 3e-3, "scenes": 2000, "held_out": 120, "image_size": 112,
                   "shape_radius": 0, "flip": True}
