"""Suite-wide settings: one torch thread (small models run fastest with one; see DEVELOPERS.md)."""

import torch

torch.set_num_threads(1)
