"""The ingestion worker: documents -> chunks -> vectors -> one SQL transaction per batch.

Stages are bounded (a batch of ``docs_per_transaction`` documents at a time), so memory does not
grow with the input. A document is acknowledged (an outcome with a sequence number) only after
the transaction holding its rows and vectors has committed. Unchanged documents (same content
hash) are not re-embedded; nor are those whose new version changes only their metadata (same
embedding hash, ``Document.embedding_hash``): their row takes the new metadata, their chunks,
vectors and classifier label stay.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from indexer.catalog import Catalog, CollectionEncoder
from indexer.classifier import Classifier
from indexer.config import IngestConfig
from indexer.errors import InvalidDocument
from indexer.readers import ReadItem, Rejection
from indexer.records import (
    Chunk,
    CollectionInfo,
    DeleteResult,
    Document,
    DocumentStatus,
    EncodedDocument,
    MetadataUpdate,
    WriteResult,
)
from indexer.store import Store
from indexer.validation import vector_for_collection
from indexer.vocabulary import is_mostly_unknown, mostly_unknown_warning

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentOutcome:
    """What happened to one document. ``sequence`` is set once its transaction committed;
    ``warning`` says when a written document is mostly outside its model's vocabulary."""

    external_id: str
    status: DocumentStatus
    error: str | None = None
    sequence: int | None = None
    warning: str | None = None


@dataclass
class IngestSummary:
    # One count per DocumentStatus, named after its value (``counts``; the Ray tally relies on it).
    read: int = 0
    written: int = 0
    unchanged: int = 0
    metadata_updated: int = 0
    rejected: int = 0
    chunks: int = 0
    seconds: float = 0.0
    last_sequence: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # Written documents mostly outside the model's vocabulary, and the first ids of them.
    mostly_unknown: int = 0
    mostly_unknown_ids: list[str] = field(default_factory=list)

    @property
    def docs_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def counts(self) -> dict[DocumentStatus, int]:
        """How many documents ended in each status."""
        return {status: getattr(self, status.value) for status in DocumentStatus}

    def outcomes(self) -> str:
        """``"3 written, 1 unchanged, 2 metadata updated, 0 rejected"``: what every front-end prints."""
        return ", ".join(
            f"{count} {status.value.replace('_', ' ')}" for status, count in self.counts().items()
        )


def embedding_text(title: str, chunk_text: str) -> str:
    """What the encoder sees for one chunk: the title gives every window its document's topic."""
    return f"{title}\n{chunk_text}" if title else chunk_text


def encode_documents(
    documents: Sequence[Document], encoder: CollectionEncoder, info: CollectionInfo
) -> list[EncodedDocument]:
    """Chunk every document and embed all chunks of the batch in one length-sorted pass.

    Each document's text and title are tokenized once; every window is embedded after its
    title, whole (a long title is cut to make room, see ``chunking.window_input``).
    """
    texts = [doc.text for doc in documents]
    results = encoder.chunk_and_encode(
        texts, [doc.title for doc in documents], info.spec.window, info.spec.overlap
    )
    # A second, cheap tokenization: chunk_and_encode keeps its ids to itself.
    shares = encoder.unknown_shares(texts)
    return [
        EncodedDocument(doc, doc.content_hash(), tuple(chunks), vectors, share)
        for doc, (chunks, vectors), share in zip(documents, results, shares, strict=True)
    ]


def given_vectors(documents: Sequence[Document], info: CollectionInfo) -> list[EncodedDocument]:
    """Documents of a collection without a model: one chunk (the whole text) with the document's
    own vector, L2-normalised when the collection normalises (as its queries are)."""
    if not documents:
        return []
    vectors = np.asarray([doc.vector for doc in documents], dtype=np.float32)
    if info.spec.normalize:
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # never zero: validated
    return [
        EncodedDocument(doc, doc.content_hash(), (Chunk(0, 0, len(doc.text), doc.text),), vectors[i : i + 1])
        for i, doc in enumerate(documents)
    ]


def label_documents(
    encoded: list[EncodedDocument], classifier: Classifier | None, info: CollectionInfo
) -> list[EncodedDocument]:
    """Each document's metadata with its classifier's label and score (replacing fields of those
    names), in the same write as its vectors. The content hash stays the user's document's: a
    label is derived from the text, so an unchanged document is not classified again."""
    if classifier is None or not encoded:
        return encoded
    labels = classifier.classify([embedding_text(e.document.title, e.document.text) for e in encoded])
    spec = info.spec
    return [
        replace(
            doc,
            document=replace(
                doc.document,
                metadata={
                    **doc.document.metadata,
                    spec.label_field: label.name,
                    spec.score_field: label.score,
                },
            ),
        )
        for doc, label in zip(encoded, labels, strict=True)
    ]


def vector_rejection(doc: Document, info: CollectionInfo) -> DocumentOutcome | None:
    """A document whose vector does not fit its collection (``vector_for_collection``): only the
    collection knows whether it takes vectors and of what length, so this check waits for it."""
    dimension = info.dimension if info.spec.takes_vectors else None
    try:
        vector_for_collection(doc.vector, record=f"document {doc.external_id!r}", dimension=dimension)
    except InvalidDocument as exc:
        return DocumentOutcome(doc.external_id, DocumentStatus.REJECTED, error=str(exc))
    return None


@dataclass(frozen=True)
class _Prepared:
    """A batch embedded, waiting for its transaction.

    ``size`` counts the input documents; ``rejected`` holds the outcomes of those refused by
    position; ``positions`` maps each accepted external id to its input positions; ``documents``
    are the distinct ones (the last version of a repeated id), ``encoded`` those whose text,
    title or vector changed, ``updates`` those whose metadata alone changed.
    """

    info: CollectionInfo
    size: int
    rejected: dict[int, DocumentOutcome]
    positions: dict[str, list[int]]
    documents: list[Document]
    encoded: list[EncodedDocument]
    updates: list[MetadataUpdate] = field(default_factory=list)
    model_name: str = ""

    def warnings(self) -> dict[str, str]:
        """``external_id -> warning`` of the embedded documents mostly outside the vocabulary."""
        return {
            doc.document.external_id: mostly_unknown_warning(doc.unknown_share, self.model_name)
            for doc in self.encoded
            if is_mostly_unknown(doc.unknown_share)
        }


class Ingestor:
    """Writes documents into collections. Blocking: async callers run it in an executor.

    ``ingest`` overlaps stages: while one batch's transaction commits on a writer thread, the next
    batch is chunked and embedded (at most ``WRITES_IN_FLIGHT`` batches wait for the writer, so
    memory stays bounded). Batches commit in input order, one transaction each.
    """

    WRITES_IN_FLIGHT = 2

    def __init__(self, store: Store, catalog: Catalog, config: IngestConfig) -> None:
        self._store = store
        self._catalog = catalog
        self._config = config

    def upsert(self, collection: str, documents: Sequence[Document]) -> list[DocumentOutcome]:
        """Embed and commit ``documents`` in one transaction; one outcome per input.

        Documents arrive validated from the edge that built them (``indexer.readers``,
        ``searcher.convert``, or ``indexer.validation.validate_document`` for library callers);
        the store's own checks are the last guard (docs/ARCHITECTURE.md, "A document's way in").
        """
        return self._commit(self._prepare(collection, documents))

    def _prepare(
        self, collection: str, documents: Sequence[Document], *, reuse_vectors: bool = True
    ) -> _Prepared:
        """Embed (the CPU/GPU-bound half of an upsert); nothing is written. With
        ``reuse_vectors`` off, a metadata-only change is embedded too."""
        info = self._catalog.get(collection)
        rejected: dict[int, DocumentOutcome] = {}
        accepted: dict[str, Document] = {}
        positions: dict[str, list[int]] = {}
        for position, doc in enumerate(documents):
            refused = vector_rejection(doc, info)
            if refused is not None:
                rejected[position] = refused
                continue
            accepted[doc.external_id] = doc  # the last version of a repeated id wins
            positions.setdefault(doc.external_id, []).append(position)
        unique = list(accepted.values())
        prepared = _Prepared(info, len(documents), rejected, positions, unique, [])
        if not unique:
            return prepared
        classifier = self._catalog.classifier_for(info)  # a missing classifier fails before any work
        changed, updates = self._changed(info, unique, reuse_vectors)
        if updates and classifier is not None:
            # The label was derived from the text, which did not change: the stored one stays.
            kept = (info.spec.label_field, info.spec.score_field)
            updates = [replace(u, kept_fields=kept) for u in updates]
        prepared = replace(prepared, updates=updates)
        if not changed:
            return prepared  # nothing to embed: not even the encoder is asked for
        if info.spec.takes_vectors:
            encoded = given_vectors(changed, info)
            return replace(prepared, encoded=label_documents(encoded, classifier, info))
        encoder = self._catalog.encoder_for(info)
        encoded = label_documents(encode_documents(changed, encoder, info), classifier, info)
        return replace(prepared, encoded=encoded, model_name=encoder.model_name)

    def _changed(
        self, info: CollectionInfo, documents: list[Document], reuse_vectors: bool
    ) -> tuple[list[Document], list[MetadataUpdate]]:
        """The documents to embed (new, or their title, text or vector changed) and those whose
        metadata alone differs from what the collection holds; unchanged ones are in neither.

        A batch still in the writer's queue may hold one of these ids: then this check misses,
        the document is embedded again and write_documents skips it by its hash, or its metadata
        update comes back stale and ``_write`` embeds it.
        """
        known = self._store.document_hashes(info.id, [d.external_id for d in documents])
        changed: list[Document] = []
        updates: list[MetadataUpdate] = []
        for doc in documents:
            stored, digest = known.get(doc.external_id), doc.content_hash()
            if stored is not None and stored.content == digest:
                continue
            embedding = doc.embedding_hash()
            if reuse_vectors and stored is not None and stored.embedding == embedding:
                updates.append(MetadataUpdate(doc, digest, embedding))
            else:
                changed.append(doc)
        return changed, updates

    def _commit(self, prepared: _Prepared) -> list[DocumentOutcome]:
        """One transaction for the prepared batch; one outcome per input document."""
        outcomes: list[DocumentOutcome | None] = [None] * prepared.size
        for position, refused in prepared.rejected.items():
            outcomes[position] = refused
        if prepared.documents:
            result, warnings = self._write(prepared)
            if prepared.info.spec.whitening and result.written:
                # After the commit, never before: an upsert is stored whether or not a map can
                # be fitted yet, and the map is fitted on what the collection holds. A metadata
                # update moves no vector, so it never calls for a refit.
                self._catalog.refit_whitening(prepared.info, self._config.whitening)
            statuses = {
                **{external_id: DocumentStatus.WRITTEN for external_id in result.written},
                **{external_id: DocumentStatus.METADATA_UPDATED for external_id in result.metadata_updated},
            }
            for doc in prepared.documents:
                status = statuses.get(doc.external_id, DocumentStatus.UNCHANGED)
                warning = warnings.get(doc.external_id) if status is DocumentStatus.WRITTEN else None
                outcome = DocumentOutcome(
                    doc.external_id, status, sequence=result.last_sequence, warning=warning
                )
                for position in prepared.positions[doc.external_id]:
                    outcomes[position] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def _write(self, prepared: _Prepared) -> tuple[WriteResult, dict[str, str]]:
        """Write the batch; returns what was written and the warnings of the embedded documents.

        A metadata update comes back stale when another writer changed the document's text
        between ``_prepare`` and this commit: the stored vectors no longer fit it, so it is
        embedded after all and written in a second transaction (rare: two writers racing on one
        document)."""
        info = prepared.info
        result = self._store.write_documents(info.id, prepared.encoded, prepared.updates)
        warnings = prepared.warnings()
        if not result.stale:
            return result, warnings
        stale = set(result.stale)
        again = self._prepare(
            info.name, [d for d in prepared.documents if d.external_id in stale], reuse_vectors=False
        )
        retried = self._store.write_documents(info.id, again.encoded)
        merged = WriteResult(
            written=result.written + retried.written,
            skipped=result.skipped + retried.skipped,
            last_sequence=retried.last_sequence,
            metadata_updated=result.metadata_updated,
        )
        return merged, {**warnings, **again.warnings()}

    def delete(self, collection: str, external_ids: Sequence[str]) -> DeleteResult:
        info = self._catalog.get(collection)
        return self._store.delete_documents(info.id, list(external_ids))

    def ingest(
        self,
        collection: str,
        items: Iterable[ReadItem],
        *,
        on_rejection: Callable[[Rejection], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> IngestSummary:
        """Consume a stream of read items in bounded batches; rejections are reported, not fatal.

        Callbacks run on the calling thread; ``on_progress`` counts a batch once it committed.
        """
        summary = IngestSummary()
        started = time.perf_counter()
        iterator = iter(items)
        in_flight: collections.deque[tuple[Future[list[DocumentOutcome]], int]] = collections.deque()
        failed = threading.Event()

        def commit(prepared: _Prepared) -> list[DocumentOutcome]:
            # After a failed transaction the batches queued behind it are not written: the run
            # stops at its first failure, as a sequential one would.
            if failed.is_set():
                raise _NotWritten
            try:
                return self._commit(prepared)
            except BaseException:
                failed.set()
                raise

        def settle(limit: int) -> None:
            while len(in_flight) > limit:
                future, size = in_flight.popleft()
                self._record_outcomes(summary, future.result(), on_rejection)
                summary.read += size
                if on_progress is not None:
                    on_progress(size)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="albatross-writer") as writer:
            try:
                while batch := list(itertools.islice(iterator, self._config.docs_per_transaction)):
                    documents = [item for item in batch if isinstance(item, Document)]
                    for rejection in (item for item in batch if isinstance(item, Rejection)):
                        self._record_rejection(summary, rejection, on_rejection)
                    prepared = self._prepare(collection, documents) if documents else None
                    if prepared is not None:
                        in_flight.append((writer.submit(commit, prepared), len(batch)))
                    else:
                        in_flight.append((_done([]), len(batch)))
                    settle(self.WRITES_IN_FLIGHT)
                settle(0)
            except BaseException:
                failed.set()
                raise
        summary.seconds = time.perf_counter() - started
        return summary

    def _record_outcomes(
        self,
        summary: IngestSummary,
        outcomes: list[DocumentOutcome],
        on_rejection: Callable[[Rejection], None] | None,
    ) -> None:
        for outcome in outcomes:
            if outcome.warning is not None:
                summary.mostly_unknown += 1
                if len(summary.mostly_unknown_ids) < 1000:
                    summary.mostly_unknown_ids.append(outcome.external_id)
            if outcome.status is DocumentStatus.REJECTED:
                rejection = Rejection(record=f"document {outcome.external_id!r}", message=outcome.error or "")
                self._record_rejection(summary, rejection, on_rejection)
            else:
                setattr(summary, outcome.status.value, getattr(summary, outcome.status.value) + 1)
            if outcome.sequence is not None:
                summary.last_sequence = max(summary.last_sequence, outcome.sequence)

    @staticmethod
    def _record_rejection(
        summary: IngestSummary, rejection: Rejection, on_rejection: Callable[[Rejection], None] | None
    ) -> None:
        summary.rejected += 1
        if len(summary.rejections) < 1000:
            summary.rejections.append(rejection)
        if on_rejection is not None:
            on_rejection(rejection)


class _NotWritten(Exception):
    """A batch skipped because an earlier one failed (never seen by callers)."""


def _done(value: list[DocumentOutcome]) -> Future[list[DocumentOutcome]]:
    future: Future[list[DocumentOutcome]] = Future()
    future.set_result(value)
    return future
