"""What every layer of the wiring may use and that uses none of them: child
processes that live and die with us, and the state a running part keeps
about itself. The bus and store adapters sit on this, the runtime above them."""
