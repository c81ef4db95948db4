-- The URL policy under which a repository was registered, decided once by the role that
-- registered it (the API or `metre up`): {"schemes": [...], "private_hosts": bool,
-- "local_paths": bool}. Pollers fetch under this policy, whatever their own METRE_ALLOWED_SCHEMES,
-- METRE_ALLOW_PRIVATE_HOSTS and METRE_ALLOW_LOCAL_PATHS say, so every role applies the same
-- decision; the host's addresses are still checked against it at every fetch. NULL (rows
-- registered before this migration): the poller's own settings apply.
ALTER TABLE repos ADD COLUMN url_policy jsonb;
