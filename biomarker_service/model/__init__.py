"""The video model: TSM ResNet-18 with one sigmoid output per biomarker."""

from biomarker_service.model.tsm import TSMResNet, temporal_shift, tsm_resnet18

__all__ = ["TSMResNet", "temporal_shift", "tsm_resnet18"]
