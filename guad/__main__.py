from guad.cli import main

raise SystemExit(main())
