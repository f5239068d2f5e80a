from gae.cli import main

raise SystemExit(main())
