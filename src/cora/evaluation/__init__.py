"""Evaluation: predictions files, COCO caption metrics, resumable runs, LLM-as-judge, result tables."""
