"""cft-lab's SLURM launcher and its local twin as Hydra plugins (Hydra instantiates launchers only from the
``hydra_plugins`` package); the logic is ``cft_lab.pipeline.launcher.CellAware``, whose import also registers the
configs ``hydra/launcher=cft_lab_slurm`` and ``cft_lab_local`` that conf/hydra/launcher/slurm.yaml and slurm_local.yaml
extend."""

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

from cft_lab.pipeline.launcher import CellAware


class CftLabSlurmLauncher(CellAware, SlurmLauncher):
    _EXECUTOR = "slurm"


class CftLabLocalLauncher(CellAware, LocalLauncher):
    _EXECUTOR = "local"
