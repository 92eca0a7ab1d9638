from ..structures import DecoderOutput, EncoderMemory
from .conditional import ConditionalDecoder, ConditionalDecoderLayer
from .dab import DABDecoder, modulate_spatial_query
from .disentangled import DisentangledDecoder, DisentangledDecoderLayer
from .smca import SMCADecoder, SMCADecoderLayer

__all__ = ["DecoderOutput", "EncoderMemory", "ConditionalDecoder", "ConditionalDecoderLayer", "DABDecoder",
           "modulate_spatial_query", "DisentangledDecoder", "DisentangledDecoderLayer", "SMCADecoder",
           "SMCADecoderLayer"]
