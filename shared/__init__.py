"""What every service of the platform uses: settings, errors, bus, event store, security."""
