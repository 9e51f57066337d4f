"""The networks: configs (configs.py) and the hierarchical diffusion autoencoder (hdae.py)."""

from guad.models.configs import CONFIGS, HDAEConfig, get_config
from guad.models.hdae import HDAE, count_parameters, load_model

__all__ = ["CONFIGS", "HDAEConfig", "get_config", "HDAE", "count_parameters", "load_model"]
