from torch import nn


def tiny(num_outputs):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_outputs))


def two_layer(input_shape, num_outputs, hidden=3):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.Linear(hidden, num_outputs)
    )


def not_a_model():
    return 42


NOT_CALLABLE = 3
