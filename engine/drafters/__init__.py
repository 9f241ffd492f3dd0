"""Drafters for n-gram speculative decoding: propose tokens the model then verifies."""

from .base import Drafter, DrafterBase, DrafterStats, HistoryMirror
from .combined import CombinedDrafter
from .document import DocumentIndex
from .edit import EditAwareDrafter
from .factory import DRAFTER_NAMES, make_drafter
from .length import AdaptiveLength
from .ngram_mod import NgramModDrafter, NgramModPool
from .simulate import simulate
from .trace import DraftRecord, TracingDrafter

__all__ = [
    "AdaptiveLength", "CombinedDrafter", "DRAFTER_NAMES", "DocumentIndex", "DraftRecord", "Drafter",
    "DrafterBase", "DrafterStats", "EditAwareDrafter", "HistoryMirror", "NgramModDrafter",
    "NgramModPool", "TracingDrafter", "make_drafter", "simulate",
]
