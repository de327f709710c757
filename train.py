"""Train a ViT classifier with any visionpe PE (LightningCLI).

    python train.py fit --config configs/vit_rope_axial.yaml
    python train.py fit --config configs/vit_learned.yaml --trainer.max_steps 200 --data.dataset abs9
    python train.py fit --config configs/finetune_timm.yaml
    python train.py fit --config configs/vit_rope_axial.yaml --ckpt_path runs/vit/rope-axial/checkpoints/last.ckpt

Every config sets ``model`` (:class:`visionpe.training.ClassifierModule`), ``data``
(:class:`visionpe.data.ImageDataModule`) and ``trainer``; the image size, class count and channel
count are linked from the data to the model.  Checkpoints (best val/acc and last) and CSV and
TensorBoard logs go under ``trainer.default_root_dir`` (``runs/vit`` by default).
"""
from __future__ import annotations

from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI

from visionpe.data import ImageDataModule
from visionpe.training import ClassifierModule


class VisionPECLI(LightningCLI):
    """LightningCLI with the data -> model links every config relies on, and CSV + TensorBoard
    logs under ``trainer.default_root_dir`` unless the config names its own loggers."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.img_size", "model.img_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if trainer.logger is None or trainer.logger is True:
            root = trainer.default_root_dir or "runs/vit"
            trainer.logger = [
                Namespace(class_path=f"lightning.pytorch.loggers.{cls}", init_args=Namespace(save_dir=root, name="logs"))
                for cls in ("CSVLogger", "TensorBoardLogger")
            ]


def main(args: list[str] | None = None) -> VisionPECLI:
    """Run the CLI (``args`` as on the command line; None reads ``sys.argv``)."""
    return VisionPECLI(
        ClassifierModule,
        ImageDataModule,
        args=args,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "callbacks": [
                ModelCheckpoint(monitor="val/acc", mode="max", save_last=True, filename="best-{step}"),
                LearningRateMonitor(logging_interval="step"),
                RichProgressBar(),
            ],
        },
    )


if __name__ == "__main__":
    main()
