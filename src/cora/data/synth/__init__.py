"""SynthPano: synthetic 360° scenes rendered by ray casting, with captions, QA and boxes."""

from cora.data.records import CAPTION_QUERY
from cora.data.synth.dataset import (
    SynthPano,
    SynthSample,
    ensure_synth_dataset,
    split_of,
    synth_corpus,
    write_synth_dataset,
)
from cora.data.synth.language import caption, needs_seam, qa_pairs, question_type, straddles_seam
from cora.data.synth.render import erp_bbox, render_directions, render_erp
from cora.data.synth.scene import DIRECTIONS, Scene, SynthObject, sample_scene

__all__ = [
    "CAPTION_QUERY",
    "DIRECTIONS",
    "Scene",
    "SynthObject",
    "SynthPano",
    "SynthSample",
    "caption",
    "ensure_synth_dataset",
    "erp_bbox",
    "needs_seam",
    "qa_pairs",
    "question_type",
    "render_directions",
    "render_erp",
    "sample_scene",
    "split_of",
    "straddles_seam",
    "synth_corpus",
    "write_synth_dataset",
]
