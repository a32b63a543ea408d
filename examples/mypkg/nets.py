"""A small CNN that is not an nn.Sequential: a BatchNorm trunk and a head holding every dropout layer.

alrun calls `Net(n_classes=..., input_shape=(C, H, W), dropout=model.dropout, **extra keys)`. Its
Dropout2d and Dropout become seeded MC-Dropout layers; with `model.trunk=features
model.head=classifier` MC sampling runs `features` once per image and `classifier` T times.
"""

from __future__ import annotations

from torch import nn


class Net(nn.Module):
    def __init__(self, n_classes: int, input_shape: tuple[int, ...], width: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout2d(dropout / 2),  # whole feature maps dropped
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width, n_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
