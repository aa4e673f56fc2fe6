"""Test-cloud-only ML2 mechanism driver 'agentless': binds every port on any host, no L2 agent.

Neutron's real drivers (openvswitch, linuxbridge, ovn) bind a port only when a live agent or
OVN chassis exists for the host; without one nova gets vif_type=binding_failed and the server
goes to ERROR. This driver binds the first segment with vif_type 'ovs' and marks the port
ACTIVE at once (nova's fake virt driver never plugs anything). neutron-server finds it through
the entry point in govcloud_testcloud_ml2-0.1.dist-info (up.sh puts this directory on PYTHONPATH).
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class AgentlessMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: True, portbindings.OVS_HYBRID_PLUG: False},
                                status=constants.PORT_STATUS_ACTIVE)
            return
