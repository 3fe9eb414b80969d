from device_client.cli import main

raise SystemExit(main())
