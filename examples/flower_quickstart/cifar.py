"""The Flower quickstart's cifar.py (PyTorch CIFAR-10 tutorial), kept as the user wrote it:
Net, load_data, train, test. Only load_data differs: it reads the CIFAR-10 files through
fedrun's reader (no per-sample transforms, no md5 check) and returns TensorDatasets."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fedrun.config import Config
from fedrun.data.pooled import CIFAR10


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def load_data(cfg: Config, train: bool) -> torch.utils.data.TensorDataset:
    """CIFAR-10 normalised to mean 0.5, std 0.5, as transforms.Normalize did in the tutorial."""
    reader = CIFAR10()
    split = reader.split(*reader.raw(cfg, train=train))
    return torch.utils.data.TensorDataset(split.x, split.y)


def train(net: Net, trainloader, epochs: int, device: torch.device) -> None:
    """Train the network (the tutorial's loop: SGD lr 0.001, momentum 0.9, cross-entropy)."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    for _ in range(epochs):
        for data in trainloader:
            images, labels = data[0].to(device), data[1].to(device)
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()


def test(net: Net, testloader, device: torch.device) -> tuple[float, float]:
    """Validate the network on the entire test set: (mean loss per example, accuracy).

    The one change from the tutorial, whose test() returned the sum of its batch-mean losses:
    fedrun's contract for evaluate() is the mean loss per example (it weights each client's by
    its test examples), and a sum over batches was ~313x too large for the central set."""
    criterion = nn.CrossEntropyLoss()
    correct, total, loss = 0, 0, 0.0
    with torch.no_grad():
        for data in testloader:
            images, labels = data[0].to(device), data[1].to(device)
            outputs = net(images)
            loss += criterion(outputs, labels).item() * labels.size(0)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return loss / total, correct / total
