pub struct PipelineVars; pub fn render() {}
