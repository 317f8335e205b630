# opentelemetry-sdk 1.4x re-detects resources on a thread pool in every fork
# child of a TracerProvider. If concurrent.futures.thread is first imported
# after the provider was created, its at-fork lock reset runs after the
# provider's handler, and a fork child that forks again deadlocks (no mptrace
# needed to see it). Importing it first, as Resource.create() would, avoids it.
import concurrent.futures.thread  # noqa: F401
