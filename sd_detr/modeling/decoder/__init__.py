from .base import DecoderOutput, EncoderMemory
from .conditional import ConditionalDecoder, ConditionalDecoderLayer

__all__ = ["DecoderOutput", "EncoderMemory", "ConditionalDecoder", "ConditionalDecoderLayer"]
