"""Occlum.json: parsing with locations, validation, and the configs derived from it.

Public API (used by the pipeline):
  load_config(path) -> OcclumConfig
  enclave_xml(cfg, *, edmm_platform=False) -> bytes     build/Enclave.xml
  sys_json(cfg, *, image_mac, initfs_mac) -> bytes      build/.Occlum_sys.json
  image_config_json(encrypted) -> bytes                 build/image_config.json
"""

from .derive import enclave_xml, image_config_json, sys_json
from .model import OcclumConfig, load_config

__all__ = ["OcclumConfig", "enclave_xml", "image_config_json", "load_config", "sys_json"]
