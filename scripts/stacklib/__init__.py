"""The code behind ``scripts/stack`` (the local stack without Docker), one module a part.

Standard library only: ``scripts/stack`` runs with the system ``python3`` before the
virtualenv exists. Not part of the ``intentstream`` distribution (setup.py lists only
stream/, agents/ and config/); the launcher puts scripts/ on ``sys.path`` to import it.

    common         paths, settings (INTENTSTREAM_STACK_*), pid files, processes, locks
    programs       java, redis-server, mvn, promtool: found on PATH or installed
    probes         does a service answer? (Kafka's wire protocol, SCRAM, Redis PING)
    services       start a group of services and wait for them; stop them; status lines
    secure         the secured clusters' CA, node certificate, users and passwords
    kafka          the single Kafka broker, its jars and the launch every node shares
    kafka_cluster  the 3-node KRaft cluster
    kafka_secure   the same cluster on SASL_SSL with ACLs
    redis          the single redis-server
    redis_cluster  the Redis Cluster (3 primaries, a replica each) and its RESP client
    redis_secure   the same on TLS with ACL users
    commands       one function a subcommand
    cli            the argument parser
"""
