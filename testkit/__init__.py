"""What tests/ and bench/ share: real servers on loopback (a Kafka-protocol broker, PostgreSQL,
sshd, git over smart HTTP), git histories built with the git CLI and the git-CLI oracle, the
roles as processes, the chaos engine, and table dumps. Neither tests/ nor bench/ imports the
other; both import this."""
