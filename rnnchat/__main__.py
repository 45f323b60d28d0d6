from rnnchat.cli.main import main

raise SystemExit(main())
