"""Build-time pipeline that trains Albatross's default encoder.

The default model is built without training (``python -m albatross.training convert``)::

    wordpiece.py  teacher vocab.txt     -> unigram spiece.model standing in for WordPiece
    convert.py    teacher BertModel     -> unshared AlbertModel computing exactly the same
    factorise.py  AlbertModel           -> factorised embedding (E < hidden), fitted in closed form
    converted.py  the three above       -> model folder + card + recorded int8 verdict

The earlier from-scratch distillation (``build``) is still here for shared-layer experiments.
Stages (each a module, each skipped when its output already exists in the cache dir)::

    corpus.py     offline English text  -> corpus.jsonl
    vocab.py      corpus                -> SentencePiece unigram spiece.model
    teacher.py    corpus + teacher      -> teacher vectors (fp16 .npy)
    warmstart.py  teacher weights       -> initial AlbertModel
    distill.py    student + vectors     -> checkpoints (resumable)
    export.py     checkpoint            -> Hugging Face model folder + model card
    card.py       run records           -> README.md model card (used by export.py)
    quick_eval.py model folder          -> nDCG@10 / Recall@100 on a BEIR folder

Rebuild the shipped model with ``python -m albatross.training convert --embedding-size 128
--notes albatross/training/card_notes.md --out indexer/models/albatross-albert-small``.
Nothing here is imported by the serving code: the teacher and its dependencies are the
optional ``train`` extra.
"""
