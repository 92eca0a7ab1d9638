from .learned import LearnedQueries

__all__ = ["LearnedQueries"]
