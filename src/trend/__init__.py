"""trend: exact, real-time trends from an event stream."""

from trend.service import Trend

__version__ = "0.1.0"
__all__ = ["Trend", "__version__"]
