"""Publishers of the fan-out tree.

The main publisher reads the aggregator's swarm records from Kafka, drops
replayed batches, gives every swarm its per-match seq and a relay_seq, and
serves the relay log over SwarmRelay.Follow. A cluster publisher follows an
upstream publisher and serves the same log to its subscriber nodes.
"""
