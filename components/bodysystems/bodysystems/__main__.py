from govcloud_common import logs
from govcloud_common.service import serve

from bodysystems.app import build_app


def main() -> None:
    logs.configure("bodysystems")
    serve(build_app(), port_name="http", default_port=18080)


if __name__ == "__main__":
    main()
