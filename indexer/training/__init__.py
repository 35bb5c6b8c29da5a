"""Build-time pipeline that trains Albatross's default encoder.

Stages (each a module, each skipped when its output already exists in the cache dir)::

    corpus.py     offline English text  -> corpus.jsonl
    vocab.py      corpus                -> SentencePiece unigram spiece.model
    teacher.py    corpus + teacher      -> teacher vectors (fp16 .npy)
    warmstart.py  teacher weights       -> initial AlbertModel
    distill.py    student + vectors     -> checkpoints (resumable)
    export.py     checkpoint            -> Hugging Face model folder + model card
    card.py       run records           -> README.md model card (used by export.py)
    quick_eval.py model folder          -> nDCG@10 / Recall@100 on a BEIR folder

Run with ``python -m indexer.training build --out indexer/models/albatross-albert-small``.
Nothing here is imported by the serving code: the teacher and its dependencies are the
optional ``train`` extra.
"""
