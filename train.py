"""Train a ViT classifier or a video diffusion transformer with any visionpe PE (LightningCLI).

    python train.py fit --config configs/vit_rope_axial.yaml
    python train.py fit --config configs/vit_learned.yaml --trainer.max_steps 200 --data.dataset abs9
    python train.py fit --config configs/finetune_timm.yaml
    python train.py fit --config configs/vit_rope_axial.yaml --ckpt_path runs/vit/rope-axial/checkpoints/last.ckpt
    python train.py video fit --config configs/video_dit_rope.yaml

Image configs set ``model`` (:class:`visionpe.training.ClassifierModule`), ``data``
(:class:`visionpe.data.ImageDataModule`) and ``trainer``; the image size, class count and channel
count are linked from the data to the model.  With a leading ``video``, the pair is
:class:`visionpe.training.VideoDiffusionModule` and :class:`visionpe.data.VideoDataModule`, and the
clip size ``(num_frames, size, size)`` is linked to ``model.video_size``.  Checkpoints (best
validation metric and last) and CSV and TensorBoard logs go under ``trainer.default_root_dir``
(``runs/vit`` or ``runs/video`` by default).
"""
from __future__ import annotations

import sys
import warnings

from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI

from visionpe.data import ImageDataModule
from visionpe.data.video_module import VideoDataModule
from visionpe.training import ClassifierModule, VideoDiffusionModule


class VisionPECLI(LightningCLI):
    """LightningCLI with the data -> model links every image config relies on, and CSV + TensorBoard
    logs under ``trainer.default_root_dir`` unless the config names its own loggers."""

    default_root = "runs/vit"

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.img_size", "model.img_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if trainer.logger is None or trainer.logger is True:
            root = trainer.default_root_dir or self.default_root
            trainer.logger = [
                Namespace(class_path=f"lightning.pytorch.loggers.{cls}", init_args=Namespace(save_dir=root, name="logs"))
                for cls in ("CSVLogger", "TensorBoardLogger")
            ]


def _clip_size(num_frames: int, size: int | list[int]) -> tuple[int, int, int]:
    """``(T, H, W)`` from the data module's frame count and frame size (int or ``[H, W]``)."""
    h, w = (size, size) if isinstance(size, int) else size
    return (num_frames, h, w)


class VideoCLI(VisionPECLI):
    """The same CLI for video diffusion: the data's clip size and class count go to the model."""

    default_root = "runs/video"

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(("data.num_frames", "data.size"), "model.video_size", compute_fn=_clip_size)
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")


def main(args: list[str] | None = None) -> VisionPECLI:
    """Run the CLI (``args`` as on the command line; None reads ``sys.argv``).  A leading ``video``
    argument trains a :class:`VideoDiffusionModule` instead of an image classifier."""
    argv = sys.argv[1:] if args is None else list(args)
    video = bool(argv) and argv[0] == "video"
    cli, model, data, monitor, mode = (VideoCLI, VideoDiffusionModule, VideoDataModule, "val/loss", "min") if video \
        else (VisionPECLI, ClassifierModule, ImageDataModule, "val/acc", "max")
    if video and args is None:  # the command line minus "video" goes in as args; that is intended here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return cli(
        model,
        data,
        args=argv[1:] if video else args,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "callbacks": [
                ModelCheckpoint(monitor=monitor, mode=mode, save_last=True, filename="best-{step}"),
                LearningRateMonitor(logging_interval="step"),
                RichProgressBar(),
            ],
        },
    )


if __name__ == "__main__":
    main()
