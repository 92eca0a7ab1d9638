from .anchors import AnchorQueries
from .learned import LearnedQueries
from .mini_detector import MiniDetector, MiniDetectorQueries
from .task_aware import TaskAwareQueryGenerator

__all__ = ["AnchorQueries", "LearnedQueries", "MiniDetector", "MiniDetectorQueries", "TaskAwareQueryGenerator"]
