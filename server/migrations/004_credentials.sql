-- Stale credentials and stale scope. Never edit a released migration: add the next one.

-- Moves on every change of a user's grids. A sync session remembers the value it began with and
-- ends when it moved, so a reassignment takes effect in sessions already open: the admin commands
-- run in another process and reach a serving relay only through this database.
ALTER TABLE users ADD COLUMN scope_version INTEGER NOT NULL DEFAULT 0;

-- Deactivating a user now revokes their devices and ends their browser sessions for good, so
-- that activating the user again brings none of them back. Users deactivated before this
-- migration get the same.
UPDATE devices SET revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
 WHERE revoked_at IS NULL AND user_id IN (SELECT id FROM users WHERE active = 0);
DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE active = 0);
