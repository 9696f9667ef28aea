"""A stand-in for prompt + frozen model whose gradient is known in closed form, for tests of the training loop.

score = w0 * red + w1 * green of the first pixel, so at w = 0 and label 1 the MSE's gradient is -2 * (red, green).
"""
import torch
from torch import nn


class LinearPrompt(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))


class LinearScore(nn.Module):
    def __init__(self, prompter):
        super().__init__()
        self.prompter = prompter

    def forward(self, images):
        return images[:, 0, 0, 0] * self.prompter.w[0] + images[:, 1, 0, 0] * self.prompter.w[1]
