"""Tests for delivery: dispatch and the runner, batched delivery, and the delivery stores."""
