-- 0013: a snapshot written in parts, so that no one transaction holds the store for the
-- whole state (hundreds of MB at a million persons) while the writer's commits wait.
-- A row of ``snapshots`` with an empty body marks a complete snapshot whose body is the
-- parts of its seq in part order; older rows with a body are whole snapshots.
CREATE TABLE snapshot_parts (
    seq  bigint  NOT NULL,
    part integer NOT NULL,
    body bytea   NOT NULL,
    PRIMARY KEY (seq, part)
);
