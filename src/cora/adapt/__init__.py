"""CORA on off-the-shelf VLMs: Qwen2.5-VL, Qwen3-VL, InternVL3, Gemma 3 and the BLIP-2 baseline.

``families/``   one file per VLM family (HF class, tiny offline model + processor, aligner features)
``inputs``      input modes: native ERP, resized ERP, cubemap faces, CORA's views (multi-image turn)
``encode``      template-first batches (the family's chat template + processor), assistant-only labels
``health``      first-batch checks (placeholders, grids, label masking, end-of-turn)
``panorope``    yaw-aware rotary position ids (M-RoPE and 1-D)
``overlap``     the overlap loss on the VLM's aligner output of adjacent tiles
``model``       ``AdaptedVLM``: the VLM + PanoRoPE + overlap loss + health checks; generation
``recipes``     stage A (aligner) / stage B (LLM LoRA + aligner), adapter save/load, merged export
``runtime`` ``data`` ``run``  the stage runner's model contract, data and entry points
``generator``   answers for ``cora eval``
"""
