from .anchors import AnchorQueries
from .learned import LearnedQueries

__all__ = ["AnchorQueries", "LearnedQueries"]
