"""fedrun: federated learning on torchrun.

Rank 0 is the server, ranks 1..W-1 host the virtual clients; the model travels as one flat
vector, broadcast from rank 0 and brought back by one reduce of weighted update sums per round.

    import fedrun

    if __name__ == "__main__":  # the ranks import this script
        cfg = fedrun.Config()
        cfg.fed.rounds = 5
        summary = fedrun.launch(cfg, nproc_per_node=3)   # from a script or notebook
    # or, inside a process that torchrun started:  fedrun.run(cfg)
"""

from fedrun.api import launch, run
from fedrun.config import Config

__version__ = "0.1.0"
__all__ = ["Config", "launch", "run"]
