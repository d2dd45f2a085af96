"""fedrun: federated learning on torchrun.

Rank 0 is the server, ranks 1..W-1 host the virtual clients; the model travels as one flat
vector, broadcast from rank 0 and brought back by one reduce of weighted update sums per round.
"""

__version__ = "0.1.0"
