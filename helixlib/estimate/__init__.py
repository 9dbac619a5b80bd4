"""Time and memory of a Plan on hardware: presets (``hardware``), the roofline of an op
(``roofline``), the α–β time of a collective (``alphabeta``), the Plan as a costed program
(``workload``), overlap (``timing``), memory per GPU (``memory``), the estimate itself
(``estimator``), closed-form programs of other strategies (``strategies``), the vectorised design
space (``design_space``) and the deployment plan's own script corrected (``seed_script``)."""

from helixlib.estimate.estimator import Estimate, Options, estimate
from helixlib.estimate.hardware import Cluster, Device, hardware_names, load_cluster, load_device

__all__ = ["Cluster", "Device", "Estimate", "Options", "estimate", "hardware_names", "load_cluster", "load_device"]
