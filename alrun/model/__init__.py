"""model: builders of the built-in networks, seeded dropout, pretrained backbones and their frozen features, the
user's model made MC-ready, the MC probe, and MC inference (the model's forward T times, batched, streamed).
Imports data, config, core; nothing of train, acquire, loop, report, track or launch."""
