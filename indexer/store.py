"""The SQL store: collections, documents, chunk vectors and the per-collection change log.

SQL is the source of truth (docs/ARCHITECTURE.md, Invariants 1); the FAISS index is rebuilt or
caught up from here.
Plain Python records and NumPy arrays go in and out; SQLAlchemy stays inside this module and the
ones it uses (``schema``, ``engine``, ``filters``, ``filter_indexes``). The checks it makes before
writing are in ``store_checks``.

Writers to one collection are serialised: PostgreSQL locks the collection row
(``SELECT ... FOR UPDATE``); SQLite write transactions start with ``BEGIN IMMEDIATE``
(``engine.mark_writer``). That serialisation is what makes ``collections.last_sequence`` gap-free
and committed in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple, TypeVar

import numpy as np
from sqlalchemy import Engine, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from indexer.config import StoreConfig
from indexer.engine import create_store_engine, mark_writer, translated_errors
from indexer.errors import (
    CollectionExists,
    CollectionNotFound,
)
from indexer.filter_indexes import FilterIndexes
from indexer.filters import compile_filter
from indexer.migrations import upgrade_to_head
from indexer.records import (
    Change,
    ChangeOp,
    CollectionInfo,
    CollectionSpec,
    CollectionStats,
    Compaction,
    DeleteResult,
    EncodedDocument,
    IndexFacts,
    MetadataFilter,
    MetadataUpdate,
    StoredChunk,
    StoredDocument,
    StoredHashes,
    StoredWhitening,
    WriteResult,
)
from indexer.schema import (
    ChangeRow,
    ChunkRow,
    CollectionRow,
    DocumentRow,
    LogReaderRow,
    collection_info,
    decode_vectors,
)
from indexer.spec import to_stored
from indexer.store_checks import check_new_collection, check_unique_ids, document_metadata, vector_blobs
from indexer.store_errors import data_dir_error
from indexer.vocabulary import MOSTLY_UNKNOWN

# Keeps every IN (...) list well below SQLite's 32766 and PostgreSQL's 65535 bound parameters.
_IN_BATCH = 5_000


T = TypeVar("T")


def _batches(items: Sequence[T], size: int = _IN_BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Existing(NamedTuple):
    """A stored document row as a write compares against it."""

    id: int
    content_hash: str
    embedding_hash: str | None


class _ChangeLog:
    """Accumulates change-log rows for one transaction, numbering them from the collection head."""

    def __init__(self, collection_id: int, sequence: int) -> None:
        self.collection_id = collection_id
        self.sequence = sequence
        self.rows: list[dict[str, Any]] = []

    def append(self, op: ChangeOp, chunk_ids: Iterable[int]) -> None:
        for chunk_id in chunk_ids:
            self.sequence += 1
            self.rows.append(
                {
                    "collection_id": self.collection_id,
                    "sequence": self.sequence,
                    "op": op.value,
                    "chunk_id": int(chunk_id),
                }
            )

    def flush(self, session: Session) -> None:
        for rows in _batches(self.rows):
            session.execute(insert(ChangeRow), list(rows))


class Store:
    """Thread-safe: every call runs in its own connection and transaction."""

    def __init__(self, engine: Engine, config: StoreConfig) -> None:
        self._engine = engine
        self._config = config
        self._filter_indexes = FilterIndexes(
            engine, DocumentRow.meta, DocumentRow.__tablename__, wait_s=config.busy_timeout_s
        )

    @classmethod
    def open(cls, config: StoreConfig) -> Store:
        """Create the data folder, connect, and bring the schema to the newest revision."""
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise data_dir_error(config.data_dir, exc) from exc
        store = cls(create_store_engine(config), config)
        try:
            with store._translated_errors(), store._engine.connect() as connection:
                mark_writer(connection)
                upgrade_to_head(connection)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    # -- plumbing -------------------------------------------------------------------------------

    def _translated_errors(self) -> AbstractContextManager[None]:
        return translated_errors(self._engine, self._config.busy_timeout_s)

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction; ``write`` ones take SQLite's writer lock up front."""
        with self._translated_errors(), self._engine.connect() as connection:
            if write:
                mark_writer(connection)
            with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                yield session

    @staticmethod
    def _lock_collection(session: Session, collection_id: int) -> CollectionRow:
        row = session.execute(
            select(CollectionRow).where(CollectionRow.id == collection_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise CollectionNotFound(f"#{collection_id}")
        return row

    @staticmethod
    def _collection_by_name(session: Session, name: str) -> CollectionRow:
        row = session.execute(select(CollectionRow).where(CollectionRow.name == name)).scalar_one_or_none()
        if row is None:
            raise CollectionNotFound(name)
        return row

    @staticmethod
    def _collection_by_id(session: Session, collection_id: int) -> CollectionRow:
        row = session.get(CollectionRow, collection_id)
        if row is None:
            raise CollectionNotFound(f"#{collection_id}")
        return row

    # -- collections ----------------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        spec: CollectionSpec,
        *,
        dimension: int,
        model_revision: str,
        tokenizer_hash: str,
        classifier_revision: str = "",
    ) -> CollectionInfo:
        check_new_collection(name, dimension)
        row = CollectionRow(
            name=name,
            **to_stored(spec),
            model_revision=model_revision,
            tokenizer_hash=tokenizer_hash,
            dimension=dimension,
            classifier_revision=classifier_revision,
            last_sequence=0,
        )
        try:
            with self._session(write=True) as session:
                exists = session.execute(select(CollectionRow.id).where(CollectionRow.name == name)).first()
                if exists is not None:
                    raise CollectionExists(name)
                session.add(row)
                session.flush()
                return collection_info(row)
        except IntegrityError as exc:  # a concurrent creator won the race on the unique name
            raise CollectionExists(name) from exc

    def get_collection(self, name: str) -> CollectionInfo:
        with self._session() as session:
            return collection_info(self._collection_by_name(session, name))

    def list_collections(self) -> list[CollectionInfo]:
        with self._session() as session:
            rows = session.execute(select(CollectionRow).order_by(CollectionRow.name)).scalars()
            return [collection_info(row) for row in rows]

    def drop_collection(self, name: str) -> None:
        """Delete a collection with its documents, chunks and change log."""
        with self._session(write=True) as session:
            row = self._collection_by_name(session, name)
            self._lock_collection(session, row.id)
            documents = select(DocumentRow.id).where(DocumentRow.collection_id == row.id)
            session.execute(delete(ChangeRow).where(ChangeRow.collection_id == row.id))
            session.execute(delete(LogReaderRow).where(LogReaderRow.collection_id == row.id))
            session.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(documents)))
            session.execute(delete(DocumentRow).where(DocumentRow.collection_id == row.id))
            session.execute(delete(CollectionRow).where(CollectionRow.id == row.id))

    def set_whitening(self, collection_id: int, blob: bytes, fitted_on: int) -> int:
        """Store a (re)fitted whitening; returns its version (one more than the last)."""
        with self._session(write=True) as session:
            row = self._lock_collection(session, collection_id)
            row.whitening, row.whitening_fitted_on = bytes(blob), fitted_on
            row.whitening_version += 1
            return row.whitening_version

    def whitening(self, collection_id: int) -> StoredWhitening | None:
        """The collection's current whitening, None before the first fit."""
        with self._session() as session:
            row = self._collection_by_id(session, collection_id)
            if row.whitening is None or row.whitening_version == 0:
                return None
            return StoredWhitening(row.whitening_version, row.whitening_fitted_on or 0, row.whitening)

    def index_facts(self, collection_id: int) -> IndexFacts:
        with self._session() as session:
            row = self._collection_by_id(session, collection_id)
            return IndexFacts(log_floor=row.log_floor, whitening_version=row.whitening_version)

    # -- documents ------------------------------------------------------------------------------

    def document_hashes(self, collection_id: int, external_ids: Sequence[str]) -> dict[str, StoredHashes]:
        """``external_id -> StoredHashes`` for those that exist."""
        found: dict[str, StoredHashes] = {}
        with self._session() as session:
            for external_id, row in self._existing(session, collection_id, list(external_ids)).items():
                found[external_id] = StoredHashes(row.content_hash, row.embedding_hash)
        return found

    def write_documents(
        self,
        collection_id: int,
        docs: Sequence[EncodedDocument],
        updates: Sequence[MetadataUpdate] = (),
    ) -> WriteResult:
        """Upsert documents and apply metadata updates in ONE transaction; unchanged ones (same
        content hash) are skipped.

        Replaced chunks are logged as REMOVE, new ones as ADD (removes first, then adds, in
        document order). ``vectors`` of each doc: float32 (len(chunks), dimension), finite.
        A metadata update touches the document row only and logs nothing: no index holds
        metadata (filters and hits read it from SQL), so no index has anything to catch up on.
        """
        metadata = [document_metadata(doc.document) for doc in docs]
        update_metadata = [document_metadata(u.document) for u in updates]
        external_ids = [doc.document.external_id for doc in docs]
        update_ids = [u.document.external_id for u in updates]
        check_unique_ids(external_ids + update_ids)
        with self._session(write=True) as session:
            collection = self._lock_collection(session, collection_id)
            blobs = [vector_blobs(doc, collection.dimension, collection.vector_dtype) for doc in docs]
            existing = self._existing(session, collection_id, external_ids + update_ids)
            changed = [
                i
                for i, doc in enumerate(docs)
                if external_ids[i] not in existing
                or existing[external_ids[i]].content_hash != doc.content_hash
            ]
            replaced = [existing[external_ids[i]].id for i in changed if external_ids[i] in existing]
            log = _ChangeLog(collection_id, collection.last_sequence)
            log.append(ChangeOp.REMOVE, self._delete_chunks(session, replaced))
            final_sequence = log.sequence + sum(len(docs[i].chunks) for i in changed)
            document_ids = self._upsert_rows(
                session, collection_id, docs, metadata, changed, existing, final_sequence
            )
            log.append(ChangeOp.ADD, self._insert_chunks(session, docs, blobs, changed, document_ids))
            log.flush(session)
            collection.last_sequence = log.sequence
            updated, stale = self._update_metadata(session, updates, update_metadata, existing)
            if updated:
                collection.metadata_version += 1
        written = set(changed)
        unchanged_updates = set(update_ids) - set(updated) - set(stale)
        return WriteResult(
            written=tuple(external_ids[i] for i in changed),
            skipped=tuple(e for i, e in enumerate(external_ids) if i not in written)
            + tuple(e for e in update_ids if e in unchanged_updates),
            last_sequence=log.sequence,
            metadata_updated=updated,
            stale=stale,
        )

    @staticmethod
    def _update_metadata(
        session: Session,
        updates: Sequence[MetadataUpdate],
        metadata: Sequence[dict[str, Any]],
        existing: dict[str, _Existing],
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Apply the updates (``metadata``: each one's, checked) whose stored version still has
        their embedding hash; returns ``(updated, stale)`` external ids (an update already stored
        is neither)."""
        stale = {
            u.document.external_id
            for u in updates
            if (row := existing.get(u.document.external_id)) is None or row.embedding_hash != u.embedding_hash
        }
        due = [
            (u, meta)
            for u, meta in zip(updates, metadata, strict=True)
            if u.document.external_id not in stale
            and existing[u.document.external_id].content_hash != u.content_hash
        ]
        ids = [existing[u.document.external_id].id for u, _ in due]
        kept: dict[int, dict[str, Any]] = {}
        if any(u.kept_fields for u, _ in due):
            for batch in _batches(ids):
                rows = session.execute(
                    select(DocumentRow.id, DocumentRow.meta).where(DocumentRow.id.in_(batch))
                )
                kept.update({doc_id: meta for doc_id, meta in rows})
        values = [
            {
                "id": doc_id,
                "meta": {**meta, **{f: kept[doc_id][f] for f in u.kept_fields if f in kept[doc_id]}},
                "content_hash": u.content_hash,
            }
            for (u, meta), doc_id in zip(due, ids, strict=True)
        ]
        for batch in _batches(values):
            session.execute(update(DocumentRow), list(batch))
        in_order = tuple(u.document.external_id for u in updates)
        return tuple(u.document.external_id for u, _ in due), tuple(e for e in in_order if e in stale)

    @staticmethod
    def _existing(session: Session, collection_id: int, external_ids: Sequence[str]) -> dict[str, _Existing]:
        """The stored rows of the documents that already exist, by external id."""
        found: dict[str, _Existing] = {}
        for batch in _batches(external_ids):
            rows = session.execute(
                select(
                    DocumentRow.external_id,
                    DocumentRow.id,
                    DocumentRow.content_hash,
                    DocumentRow.embedding_hash,
                ).where(DocumentRow.collection_id == collection_id, DocumentRow.external_id.in_(batch))
            )
            found.update({external_id: _Existing(*rest) for external_id, *rest in rows})
        return found

    @staticmethod
    def _delete_chunks(session: Session, document_ids: Sequence[int]) -> list[int]:
        """Delete the chunks of these documents; returns their ids, ascending."""
        chunk_ids: list[int] = []
        for batch in _batches(document_ids):
            chunk_ids.extend(
                session.execute(
                    select(ChunkRow.id).where(ChunkRow.document_id.in_(batch)).order_by(ChunkRow.id)
                ).scalars()
            )
            session.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(batch)))
        return sorted(chunk_ids)

    @staticmethod
    def _upsert_rows(
        session: Session,
        collection_id: int,
        docs: Sequence[EncodedDocument],
        metadata: Sequence[dict[str, Any]],
        changed: Sequence[int],
        existing: dict[str, _Existing],
        sequence: int,
    ) -> dict[int, int]:
        """Update or insert the document rows of ``changed``; returns ``doc index -> document id``."""
        document_ids: dict[int, int] = {}
        updates, inserts, new_indices = [], [], []
        for i in changed:
            document = docs[i].document
            values = {
                "title": document.title,
                "text": document.text,
                "meta": metadata[i],
                "content_hash": docs[i].content_hash,
                "embedding_hash": document.embedding_hash(),
                "updated_sequence": sequence,
                "unknown_share": docs[i].unknown_share,
            }
            if document.external_id in existing:
                document_ids[i] = existing[document.external_id].id
                updates.append({"id": document_ids[i], **values})
            else:
                inserts.append(
                    {"collection_id": collection_id, "external_id": document.external_id, **values}
                )
                new_indices.append(i)
        if updates:
            session.execute(update(DocumentRow), updates)
        if inserts:
            new_ids = (
                session.execute(
                    insert(DocumentRow).returning(DocumentRow.id, sort_by_parameter_order=True), inserts
                )
                .scalars()
                .all()
            )
            document_ids.update(zip(new_indices, new_ids, strict=True))
        return document_ids

    @staticmethod
    def _insert_chunks(
        session: Session,
        docs: Sequence[EncodedDocument],
        blobs: Sequence[list[bytes]],
        changed: Sequence[int],
        document_ids: dict[int, int],
    ) -> list[int]:
        """Insert the chunks of ``changed`` docs with their vectors; returns the new chunk ids."""
        rows = [
            {
                "document_id": document_ids[i],
                "ordinal": chunk.ordinal,
                "start": chunk.start,
                "end": chunk.end,
                "text": chunk.text,
                "vector": blob,
            }
            for i in changed
            for chunk, blob in zip(docs[i].chunks, blobs[i], strict=True)
        ]
        if not rows:
            return []
        return list(
            session.execute(
                insert(ChunkRow).returning(ChunkRow.id, sort_by_parameter_order=True), rows
            ).scalars()
        )

    def delete_documents(self, collection_id: int, external_ids: Sequence[str]) -> DeleteResult:
        """Delete documents by external id, logging a REMOVE per chunk; unknown ids are ``missing``."""
        with self._session(write=True) as session:
            collection = self._lock_collection(session, collection_id)
            existing = self._existing(session, collection_id, list(dict.fromkeys(external_ids)))
            document_ids = [row.id for row in existing.values()]
            log = _ChangeLog(collection_id, collection.last_sequence)
            log.append(ChangeOp.REMOVE, self._delete_chunks(session, document_ids))
            for batch in _batches(document_ids):
                session.execute(delete(DocumentRow).where(DocumentRow.id.in_(batch)))
            log.flush(session)
            collection.last_sequence = log.sequence
        deleted = tuple(e for e in dict.fromkeys(external_ids) if e in existing)
        missing = tuple(e for e in dict.fromkeys(external_ids) if e not in existing)
        return DeleteResult(deleted=deleted, missing=missing, last_sequence=log.sequence)

    def get_documents(self, collection_id: int, external_ids: Sequence[str]) -> list[StoredDocument]:
        """The documents that exist, in the order asked."""
        chunk_count = (
            select(func.count(ChunkRow.id)).where(ChunkRow.document_id == DocumentRow.id).scalar_subquery()
        )
        found: dict[str, StoredDocument] = {}
        with self._session() as session:
            for batch in _batches(list(external_ids)):
                rows = session.execute(
                    select(DocumentRow, chunk_count).where(
                        DocumentRow.collection_id == collection_id, DocumentRow.external_id.in_(batch)
                    )
                )
                for row, count in rows:
                    found[row.external_id] = StoredDocument(
                        external_id=row.external_id,
                        title=row.title,
                        text=row.text,
                        metadata=row.meta,
                        content_hash=row.content_hash,
                        chunk_count=int(count),
                    )
        return [found[e] for e in dict.fromkeys(external_ids) if e in found]

    # -- change log and vectors -----------------------------------------------------------------

    def last_sequence(self, collection_id: int) -> int:
        with self._session() as session:
            return self._collection_by_id(session, collection_id).last_sequence

    def filter_version(self, collection_id: int) -> tuple[int, int]:
        """``(last_sequence, metadata_version)``: moves whenever a filter may match other chunks
        (an add or a remove is in the change log, a metadata-only update is counted apart)."""
        with self._session() as session:
            row = self._collection_by_id(session, collection_id)
            return int(row.last_sequence), int(row.metadata_version)

    def log_floor(self, collection_id: int) -> int:
        """Changes at or below this sequence may be pruned: replaying from below it misses some."""
        with self._session() as session:
            return self._collection_by_id(session, collection_id).log_floor

    def record_reader(self, collection_id: int, reader: str, position: int, now: float) -> None:
        """``reader`` may still replay from ``position`` (seen at ``now``, epoch seconds);
        ``CollectionNotFound`` once the collection is dropped."""
        with self._session(write=True) as session:
            # The collection row locked FOR KEY SHARE, as the insert's foreign-key check would lock it
            # anyway: a drop committed first makes this CollectionNotFound instead of a FOREIGN KEY
            # failure, and one that comes later waits, then deletes this row with the rest.
            exists = session.execute(
                select(CollectionRow.id)
                .where(CollectionRow.id == collection_id)
                .with_for_update(key_share=True)
            ).first()
            if exists is None:
                raise CollectionNotFound(f"#{collection_id}")
            row = session.get(LogReaderRow, (collection_id, reader))
            if row is None:
                session.add(
                    LogReaderRow(collection_id=collection_id, reader=reader, position=position, seen_at=now)
                )
            else:
                row.position, row.seen_at = position, now

    def prune_log(
        self, collection_id: int, now: float, *, reader_ttl_s: float, max_entries: int | None
    ) -> Compaction:
        """Delete the changes every reader seen within ``reader_ttl_s`` has passed (all of them when
        none is), and any beyond the newest ``max_entries``; readers silent longer are forgotten."""
        with self._session(write=True) as session:
            row = self._lock_collection(session, collection_id)
            session.execute(
                delete(LogReaderRow).where(
                    LogReaderRow.collection_id == collection_id, LogReaderRow.seen_at < now - reader_ttl_s
                )
            )
            slowest = session.execute(
                select(func.min(LogReaderRow.position)).where(LogReaderRow.collection_id == collection_id)
            ).scalar_one()
            floor = row.last_sequence if slowest is None else min(int(slowest), row.last_sequence)
            if max_entries is not None:
                floor = max(floor, row.last_sequence - max_entries)
            if floor <= row.log_floor:
                return Compaction(floor=row.log_floor, removed=0)
            removed = session.execute(
                delete(ChangeRow).where(ChangeRow.collection_id == collection_id, ChangeRow.sequence <= floor)
            ).rowcount
            row.log_floor = floor
            return Compaction(floor=floor, removed=int(removed or 0))

    def changes_since(self, collection_id: int, sequence: int, limit: int = 100_000) -> list[Change]:
        """Change-log entries with sequence > ``sequence``, ascending, at most ``limit``."""
        with self._session() as session:
            rows = session.execute(
                select(ChangeRow.sequence, ChangeRow.op, ChangeRow.chunk_id)
                .where(ChangeRow.collection_id == collection_id, ChangeRow.sequence > sequence)
                .order_by(ChangeRow.sequence)
                .limit(limit)
            )
            return [Change(sequence=s, op=ChangeOp(op), chunk_id=c) for s, op, c in rows]

    def vectors_for(
        self, collection_id: int, chunk_ids: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of the chunks that still exist: ids int64 (n,) ascending, float32 (n, d)."""
        wanted = [int(i) for i in np.asarray(chunk_ids, dtype=np.int64).ravel()]
        ids: list[int] = []
        blobs: list[bytes] = []
        with self._session() as session:
            collection = self._collection_by_id(session, collection_id)
            for batch in _batches(wanted):
                # The collection is checked on the rows, not in WHERE: given both, SQLite walked
                # every document of the collection and probed it for every id of the batch
                # (318 s for 5,000 ids of a 20,000-document collection, 0.05 s without).
                rows = session.execute(
                    select(ChunkRow.id, ChunkRow.vector, DocumentRow.collection_id)
                    .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
                    .where(ChunkRow.id.in_(batch))
                )
                for chunk_id, blob, owner in rows:
                    if owner == collection_id:
                        ids.append(chunk_id)
                        blobs.append(blob)
            dimension, dtype = collection.dimension, collection.vector_dtype
        order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
        vectors = decode_vectors(blobs, dimension, dtype)
        return np.asarray(ids, dtype=np.int64)[order], vectors[order]

    def _vector_format(self, collection_id: int) -> tuple[int, str]:
        """(dimension, stored dtype) of a collection's vectors."""
        with self._session() as session:
            collection = self._collection_by_id(session, collection_id)
            return collection.dimension, collection.vector_dtype

    def iter_vectors(
        self, collection_id: int, batch: int = 10_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All live chunk vectors by ascending id, ``batch`` at a time: (int64 (n,), float32 (n, d)).

        Each page is its own short read transaction (keyset pagination), so a long rebuild never
        holds a snapshot open; callers replay the change log from a sequence read *before* the
        first page, which covers whatever changed meanwhile.
        """
        dimension, dtype = self._vector_format(collection_id)
        after = -1
        while True:
            with self._session() as session:
                rows = session.execute(
                    select(ChunkRow.id, ChunkRow.vector)
                    .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
                    .where(DocumentRow.collection_id == collection_id, ChunkRow.id > after)
                    .order_by(ChunkRow.id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, decode_vectors([r[1] for r in rows], dimension, dtype)
            after = int(ids[-1])

    def iter_documents(
        self, collection_id: int, batch: int = 1_000
    ) -> Iterator[tuple[StoredDocument, np.ndarray]]:
        """Every document with its chunk vectors, float32 (chunks, d) in chunk order, by
        ascending document row id; each page is its own short read transaction (keyset
        pagination), so an export never holds a snapshot open."""
        dimension, dtype = self._vector_format(collection_id)
        after = -1
        while True:
            with self._session() as session:
                rows = (
                    session.execute(
                        select(DocumentRow)
                        .where(DocumentRow.collection_id == collection_id, DocumentRow.id > after)
                        .order_by(DocumentRow.id)
                        .limit(batch)
                    )
                    .scalars()
                    .all()
                )
                if not rows:
                    return
                blobs: dict[int, list[bytes]] = {row.id: [] for row in rows}
                chunks = session.execute(
                    select(ChunkRow.document_id, ChunkRow.vector)
                    .where(ChunkRow.document_id.in_(list(blobs)))
                    .order_by(ChunkRow.document_id, ChunkRow.ordinal)
                )
                for document_id, blob in chunks:
                    blobs[document_id].append(blob)
            for row in rows:
                document = StoredDocument(
                    external_id=row.external_id,
                    title=row.title,
                    text=row.text,
                    metadata=row.meta,
                    content_hash=row.content_hash,
                    chunk_count=len(blobs[row.id]),
                )
                yield document, decode_vectors(blobs[row.id], dimension, dtype)
            after = rows[-1].id

    def chunk_texts_for(
        self, collection_id: int, chunk_ids: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """(title, chunk text) of the chunks that still exist: ids int64 (n,) ascending and one
        pair per id, what the lexical index holds of each chunk."""
        wanted = [int(i) for i in np.asarray(chunk_ids, dtype=np.int64).ravel()]
        found: dict[int, tuple[str, str]] = {}
        with self._session() as session:
            for batch in _batches(wanted):
                rows = session.execute(self._chunk_text_query(collection_id).where(ChunkRow.id.in_(batch)))
                found.update((chunk_id, (title, text)) for chunk_id, title, text in rows)
        ids = sorted(found)
        return np.asarray(ids, dtype=np.int64), [found[i] for i in ids]

    def iter_chunk_texts(
        self, collection_id: int, batch: int = 10_000
    ) -> Iterator[tuple[np.ndarray, list[tuple[str, str]]]]:
        """Every live chunk's (title, text) by ascending id, ``batch`` at a time, paged as
        ``iter_vectors`` is (keyset pagination, one short read transaction per page)."""
        after = -1
        while True:
            with self._session() as session:
                rows = session.execute(
                    self._chunk_text_query(collection_id)
                    .where(ChunkRow.id > after)
                    .order_by(ChunkRow.id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, [(r[1], r[2]) for r in rows]
            after = int(ids[-1])

    @staticmethod
    def _chunk_text_query(collection_id: int) -> Select[tuple[int, str, str]]:
        return (
            select(ChunkRow.id, DocumentRow.title, ChunkRow.text)
            .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
            .where(DocumentRow.collection_id == collection_id)
        )

    def stats(self, collection_id: int) -> CollectionStats:
        with self._session() as session:
            collection = self._collection_by_id(session, collection_id)
            documents = session.execute(
                select(func.count(DocumentRow.id)).where(DocumentRow.collection_id == collection_id)
            ).scalar_one()
            chunks = session.execute(
                select(func.count(ChunkRow.id))
                .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
                .where(DocumentRow.collection_id == collection_id)
            ).scalar_one()
            mostly_unknown = session.execute(
                select(func.count(DocumentRow.id)).where(
                    DocumentRow.collection_id == collection_id, DocumentRow.unknown_share > MOSTLY_UNKNOWN
                )
            ).scalar_one()
            return CollectionStats(
                documents=documents,
                chunks=chunks,
                last_sequence=collection.last_sequence,
                mostly_unknown=mostly_unknown,
            )

    # -- search support -------------------------------------------------------------------------

    def chunks_by_id(self, chunk_ids: Sequence[int] | np.ndarray) -> dict[int, StoredChunk]:
        """Chunks (with their document's id, title and metadata) that exist, by chunk id."""
        wanted = [int(i) for i in np.asarray(chunk_ids, dtype=np.int64).ravel()]
        found: dict[int, StoredChunk] = {}
        with self._session() as session:
            for batch in _batches(wanted):
                rows = session.execute(
                    select(
                        ChunkRow.id,
                        ChunkRow.text,
                        ChunkRow.start,
                        ChunkRow.end,
                        DocumentRow.external_id,
                        DocumentRow.title,
                        DocumentRow.meta,
                    )
                    .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
                    .where(ChunkRow.id.in_(batch))
                )
                for chunk_id, chunk_text, start, end, external_id, title, meta in rows:
                    found[chunk_id] = StoredChunk(
                        chunk_id=chunk_id,
                        external_id=external_id,
                        title=title,
                        text=chunk_text,
                        start=start,
                        end=end,
                        metadata=meta,
                    )
        return found

    def chunk_ids_matching(
        self, collection_id: int, metadata_filter: MetadataFilter, among: np.ndarray | None = None
    ) -> np.ndarray:
        """Ids (int64 (n,), ascending) of the chunks whose document matches the filter; with
        ``among`` (chunk ids), only those of them (a primary-key lookup per id, not a listing)."""
        query = chunk_ids_query(collection_id, metadata_filter)  # InvalidFilter before any I/O
        if among is None:
            self._filter_indexes.ensure(metadata_filter)
            with self._session() as session:
                return np.asarray(session.execute(query).scalars().all(), dtype=np.int64)
        found: list[int] = []
        with self._session() as session:
            for batch in _batches(np.unique(among).tolist()):
                found += (
                    session.execute(chunk_ids_among_query(collection_id, metadata_filter, batch))
                    .scalars()
                    .all()
                )
        return np.sort(np.asarray(found, dtype=np.int64))


def chunk_ids_among_query(
    collection_id: int, metadata_filter: MetadataFilter, chunk_ids: Sequence[int]
) -> Select[tuple[int]]:
    """Which of ``chunk_ids`` the filter allows. The documents are reached from each chunk (a
    correlated EXISTS): as a join, SQLite drove it from the filter's expression index, a scan of
    every matching document (1.2 s at 30,000 for a filter allowing them all) for a few hundred ids."""
    condition = compile_filter(metadata_filter, DocumentRow.meta)
    document_allows = (
        select(DocumentRow.id)
        .where(DocumentRow.id == ChunkRow.document_id, DocumentRow.collection_id == collection_id, condition)
        .exists()
    )
    return select(ChunkRow.id).where(ChunkRow.id.in_(chunk_ids), document_allows)


def chunk_ids_query(collection_id: int, metadata_filter: MetadataFilter) -> Select[tuple[int]]:
    """The query ``Store.chunk_ids_matching`` runs (its plan is what the filter indexes serve)."""
    condition = compile_filter(metadata_filter, DocumentRow.meta)
    return (
        select(ChunkRow.id)
        .join(DocumentRow, DocumentRow.id == ChunkRow.document_id)
        .where(DocumentRow.collection_id == collection_id, condition)
        .order_by(ChunkRow.id)
    )
